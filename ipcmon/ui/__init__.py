"""The Textual dashboard (`ipcmon` with no subcommand); build it with ipcmon.ui.app.make_app."""
