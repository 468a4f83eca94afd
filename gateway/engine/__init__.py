"""asyncio orchestration: master order -> allocation -> child orders -> terminals -> fills."""
