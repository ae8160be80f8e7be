"""Two-way binding between the viewer's traitlets and the shared ViewModel.

Model events set the traitlet; a traitlet change (from Python or the browser) sets the model.
A guard per field stops the echo, so each change crosses once. A value the model refuses
(an HU preset on non-HU data, a bad window) puts the traitlet back to the model's value; from
Python the error is raised, from the browser it becomes the viewer's ``warning`` (cleared by
the next accepted change).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import CTStackError
from ..roi import ROI

if TYPE_CHECKING:
    from ..viewmodel import ViewModel

FIELDS = (
    "crosshair", "window", "window_preset", "colormap", "layout",
    "roi", "threshold", "level_3d", "measurements",
)  # fmt: skip


def to_trait(name: str, value: Any) -> Any:
    """A model value as its traitlet holds it (JSON: tuples become lists, objects dicts).

    ``roi``: ``{"z": [start, stop], "y": ..., "x": ..., "source": str, "reason": str}``
    (level-0, half-open); ``measurements``: a list of ``{"start": [z, y, x], "end": [z, y, x],
    "length": float, "unit": str}``."""
    if name in ("crosshair", "window"):
        return list(value)
    if name == "roi":
        return {**{a: list(getattr(value, a)) for a in "zyx"}, "source": value.source,
                "reason": value.reason}  # fmt: skip
    if name == "measurements":
        return [
            {"start": list(m.start), "end": list(m.end), "length": m.length, "unit": m.unit}
            for m in value
        ]
    return value


def from_trait(name: str, value: Any) -> Any:
    """A traitlet value as the model's setter takes it (the reverse of :func:`to_trait`).

    The viewer's ``roi`` and ``measurements`` traitlets have checked the value already
    (``_tools.roi_value``, ``_tools.measurement_values``): here it is only converted."""
    if name == "roi":
        return ROI.from_dict({"source": "user", **value})
    if name == "measurements":
        return [(m["start"], m["end"]) for m in value]
    return value


class ModelBinding:
    """Keeps ``widget.<field>`` and ``model.<field>`` equal for every field in FIELDS."""

    def __init__(
        self,
        widget: Any,
        model: ViewModel,
        from_browser: Callable[[Any], bool],
        on_refused: Callable[[Any, str, str | None], None],
    ) -> None:
        """``from_browser(widget)`` tells whether a change comes from the browser;
        ``on_refused(widget, field, message)`` hears a refusal (message None: an accepted
        change). Both take the widget, so nothing here holds it: the model outlives it."""
        self._widget = weakref.ref(widget)
        self.model = model
        self._from_browser = from_browser
        self._on_refused = on_refused
        self._busy: set[str] = set()
        self._slots: list[tuple[Any, Callable[[Any], None]]] = []
        for name in FIELDS:
            slot = self._model_slot(name)
            signal = getattr(model.events, name)
            signal.connect(slot)
            self._slots.append((signal, slot))
        widget.observe(self._on_trait, names=list(FIELDS))

    @property
    def widget(self) -> Any:
        return self._widget()

    def close(self) -> None:
        """Stop listening to the model (it outlives the widget) and to the widget."""
        for signal, slot in self._slots:
            signal.disconnect(slot)
        self._slots.clear()
        widget = self.widget
        if widget is not None:
            with contextlib.suppress(ValueError):
                widget.unobserve(self._on_trait, names=list(FIELDS))

    @contextlib.contextmanager
    def _guard(self, name: str) -> Iterator[None]:
        self._busy.add(name)
        try:
            yield
        finally:
            self._busy.discard(name)

    def _model_slot(self, name: str) -> Callable[[Any], None]:
        def slot(value: Any) -> None:
            self._push(name, value)

        return slot

    def _push(self, name: str, value: Any) -> None:
        """Model -> traitlet (guarded, so the traitlet's observer does not echo it back)."""
        widget = self.widget
        if widget is not None:
            with self._guard(name):
                setattr(widget, name, to_trait(name, value))

    def _on_trait(self, change: dict[str, Any]) -> None:
        """Traitlet -> model; a refused value puts the traitlet back."""
        name = change["name"]
        widget = self.widget
        if name in self._busy or widget is None:
            return
        browser = self._from_browser(widget)
        try:
            with self._guard(name):
                setattr(self.model, name, from_trait(name, change["new"]))
        except CTStackError as exc:
            self._push(name, getattr(self.model, name))
            self._on_refused(widget, name, str(exc))
            if not browser:
                raise
            return
        # the model may have adjusted the value (clamped crosshair, widened window)
        self._push(name, getattr(self.model, name))
        self._on_refused(widget, name, None)
