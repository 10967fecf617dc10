"""Readiness: the connector serves only when the SSOT is loaded, not empty, and the surface
has been rebuilt from it (DESIGN §11). Never ready on an empty SSOT without saying why."""

from __future__ import annotations

from fxconnector.core.model.status import SsotState, SurfaceState


def readiness(ssot: SsotState, surface: SurfaceState) -> tuple[bool, str]:
    """(ready, reason when not)."""
    if ssot is SsotState.LOADING:
        return False, "ssot is loading"
    if ssot is SsotState.EMPTY:
        return False, "ssot is empty: no final bar yet (wait for the first minute, or warm up)"
    if surface is SurfaceState.REBUILDING:
        return False, "surface is being rebuilt from the ssot"
    if surface is not SurfaceState.OK:
        return False, f"surface is {surface.value}: redis unreachable, catching up when back"
    return True, ""
