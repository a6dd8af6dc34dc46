"""What fields resolve to: the signed-in user, their active sessions, their history, geolocation.
Resolvers fetch and check; graph.types shapes the answer."""
