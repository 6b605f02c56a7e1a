"""Reading and writing: MRC maps with validation, RELION particle STAR files."""
