"""What turns requests and signals into metric updates: request hooks, signal receivers,
safe sending, validation of app input, the identity of a request's user."""
