"""A component: one container plus the settings that shape its flags and files."""

from __future__ import annotations

from .base import Model
from .containers import Container


class Component(Model):
    """Subclasses derive flags from their settings; an explicit ``container.command`` wins."""

    container: Container

    def derived_command(self) -> list[str] | None:
        return None

    def derived_entrypoint(self) -> list[str] | None:
        return None

    def derived_environment(self) -> dict[str, str]:
        return {}

    @property
    def environment(self) -> dict[str, str]:
        return self.derived_environment() | self.container.environment

    @property
    def command(self) -> list[str] | None:
        return self.container.command if self.container.command is not None else self.derived_command()

    @property
    def entrypoint(self) -> list[str] | None:
        return self.container.entrypoint if self.container.entrypoint is not None else self.derived_entrypoint()
