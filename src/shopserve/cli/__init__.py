"""Command-line adapter: parses flags, calls the Python API, prints. Imported by nobody."""
