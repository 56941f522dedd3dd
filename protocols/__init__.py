"""fhbench's protocols: one YAML file each (data, installed with the package)."""
