"""Router: severity, department, level and first-contact ownership of every complaint."""
