"""What is kept: the SQLite case archive (schema, migrations, imports, the open session) and the old JSON session
format it imports."""
