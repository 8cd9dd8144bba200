"""Widgets of the dashboard's views: object tables, detail pane, overview, events, demos."""
