"""The oslo.messaging edge: batches of notifications in, acknowledgements out."""
