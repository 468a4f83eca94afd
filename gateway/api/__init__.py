"""grpc.aio servicers, proto <-> domain mapping, error mapping and server assembly.
Nothing imports this layer."""
