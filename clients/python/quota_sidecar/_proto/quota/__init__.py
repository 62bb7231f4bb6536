"""Generated from proto/ by tools/generate_stubs.py; do not edit."""
