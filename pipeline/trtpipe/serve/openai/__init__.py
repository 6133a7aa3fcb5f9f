"""OpenAI semantics: request -> generation plan (Generation, EngineCalls) -> text events. No HTTP, no gRPC."""
