"""Documents: opening PDFs, TIFFs and images, rendering pages, limits, quarantine reasons."""
