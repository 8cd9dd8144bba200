"""Screens pushed over the dashboard: process view, signal picker, confirmations, help."""
