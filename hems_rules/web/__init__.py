"""The status page (DESIGN.md §9): served by hems-rules itself, no build step, no internet."""
