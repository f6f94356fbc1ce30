"""One module per connection type; each registers its spec model and connector."""
