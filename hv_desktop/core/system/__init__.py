"""The machine: reading only regular files, file names as text, process set-up, packaged resources, the data folder,
what may be written."""
