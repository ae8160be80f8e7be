"""Qt widgets and the background build controller of the napari plugin."""
