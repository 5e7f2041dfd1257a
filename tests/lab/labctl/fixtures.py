"""The lab's accounts, catalog, image and flavor, made through the real APIs.

openstacksdk comes with nova (nova uses it for placement), so the lab's own
setup talks to its services the way the drills and the collection do.
"""

import io
import warnings

from . import configs, settings


def connect(lab, user=settings.ADMIN):
    import openstack      # imported here: it costs a second at start-up

    warnings.filterwarnings("ignore", module="openstack")
    name, password, project = user
    return openstack.connect(
        auth_url=lab.auth_url, username=name, password=password, project_name=project,
        user_domain_name="Default", project_domain_name="Default",
        region_name=settings.REGION, identity_api_version="3", interface="public",
        # The lab is local; an unanswered call is a bug, not a slow network.
        api_timeout=120, load_yaml_config=False, load_envvars=False)


def create_identity(lab, admin):
    """Projects, users, roles and the service catalog on top of what
    `keystone-manage bootstrap` made (admin user and project, the roles
    admin/manager/member/reader/service, and keystone's own endpoints)."""
    identity = admin.identity
    roles = {role.name: role for role in identity.roles()}
    domain = "default"

    def project(name):
        return identity.create_project(name=name, domain_id=domain, description="stackmender lab")

    def user(name, password, home):
        return identity.create_user(name=name, password=password, domain_id=domain,
                                    default_project_id=home.id)

    member_user, member_password, member_project = settings.MEMBER
    demo = project(member_project)
    identity.assign_project_role_to_user(demo, user(member_user, member_password, demo), roles["member"])

    service_project = project("service")
    for name in settings.SERVICE_USERS:
        account = user(name, configs.service_password(name), service_project)
        # admin for the service's own privileged calls, service so that its
        # service tokens pass service_token_roles_required.
        for role in ("admin", "service"):
            identity.assign_project_role_to_user(service_project, account, roles[role])

    catalog = [
        ("nova", "compute", lab.url("nova-api", "/v2.1")),
        ("cinder", "block-storage", lab.url("cinder-api", "/v3/%(project_id)s")),
        ("placement", "placement", lab.url("placement")),
        ("glance", "image", lab.url("glance")),
        ("neutron", "network", lab.url("neutron")),
    ]
    for name, kind, url in catalog:
        service = identity.create_service(name=name, type=kind, is_enabled=True)
        for interface in ("public", "internal", "admin"):
            identity.create_endpoint(service_id=service.id, interface=interface, url=url,
                                     region_id=settings.REGION)


def create_image(lab, admin):
    """A small public raw image; the fake virt driver never reads it."""
    image = admin.image.create_image(
        name=settings.IMAGE_NAME, disk_format="raw", container_format="bare",
        visibility="public", data=io.BytesIO(b"\0" * (1024 * 1024)), validate_checksum=False)
    return admin.image.wait_for_status(image, status="active", wait=60, interval=0.5)


def ensure_flavor(admin):
    flavor = admin.compute.find_flavor(settings.FLAVOR["id"], ignore_missing=True)
    if flavor is None:
        flavor = admin.compute.create_flavor(**settings.FLAVOR)
    return flavor
