"""Pure view builders for the dashboard: records to inert rows and detail text (Rich, never Textual)."""
