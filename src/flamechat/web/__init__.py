"""The browser's side: pages, the local API (/api/v1) and the live event stream."""
