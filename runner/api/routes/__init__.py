"""One router per resource; `create_app` includes them in this order (the OpenAPI document's)."""
