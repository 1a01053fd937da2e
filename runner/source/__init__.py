"""Reading input files: YAML that remembers lines, and validation errors that name
file:line: field."""
