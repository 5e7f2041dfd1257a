"""Registry entries of modules, one file each (see tests/security/module_cases.py)."""
