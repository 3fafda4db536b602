"""The openai-agents SDK's weather agent, run against a gateway: one function tool, one question."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider


def run_weather_agent(base_url: str, model: str) -> tuple[list[str], Any]:
    """Ask "What is the weather in Oslo?" through ``base_url``; returns the cities the tool was called with
    and the run's result."""
    called: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        called.append(city)
        return "sunny, 21 C"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        agent = Agent(name="weather", instructions="Answer with the weather tool.", tools=[get_weather],
                      model=model)
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)
        try:
            return await Runner.run(agent, "What is the weather in Oslo?", run_config=config)
        finally:
            await client.close()

    return called, asyncio.run(run())
