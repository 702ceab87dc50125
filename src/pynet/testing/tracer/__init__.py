"""Packet tracers over the backends' fakes: replay a packet through rendered rules, without a kernel."""
