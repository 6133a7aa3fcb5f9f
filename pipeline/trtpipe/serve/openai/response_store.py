"""The stored responses of /v1/responses (`store: true`, the default): in memory, bounded, per API-server process.

What `GET /v1/responses/{id}` returns and what `previous_response_id` continues. Each entry keeps the Response
object and the items it answered (the whole conversation before it, without `instructions`), so a conversation
continues from any stored response even after the responses before it were deleted or evicted.

Bounds (FrontendSettings `max_stored_responses`, `max_stored_response_chars`): at most that many responses, holding
at most that many characters of text in all (each entry counts its whole conversation, so long conversations
fill the bound sooner); beyond either, the least recently used (stored, read or continued) go first. A response
larger than the whole character bound is not stored.
NOTE: nothing is written to disk and nothing is shared: a restart forgets every response, and with several
API-server processes (`trtpipe serve --api-servers N`) a response is held only by the process that made it, so a
GET or `previous_response_id` that reaches another process gets a 404 / 400. Clients that need either across
processes send the whole conversation as `input` (`store: false`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_STORED_RESPONSES = 1024
MAX_STORED_RESPONSE_CHARS = 32 * 1024 * 1024


@dataclass(frozen=True)
class StoredResponse:
    response: dict  # the Response object, as GET returns it
    context: list[dict]  # the input items it answered, the earlier conversation first
    num_chars: int  # characters of text in context and output (what the bound counts)

    @property
    def id(self) -> str:
        return self.response["id"]

    @property
    def conversation(self) -> list[dict]:
        """What a response that continues this one starts from: its context, then its output."""
        return self.context + self.response["output"]


class ResponseStore:
    """Least recently used first out. Used from the event loop only (no lock)."""

    def __init__(self, max_responses: int = MAX_STORED_RESPONSES, max_chars: int = MAX_STORED_RESPONSE_CHARS):
        self.max_responses, self.max_chars = max_responses, max_chars
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self.num_chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, stored: StoredResponse) -> bool:
        """Store (evicting the least recently used as needed); False when it alone is over the character bound."""
        if stored.num_chars > self.max_chars or self.max_responses < 1:
            return False
        self.delete(stored.id)
        while self._entries and (len(self._entries) >= self.max_responses
                                 or self.num_chars + stored.num_chars > self.max_chars):
            _, evicted = self._entries.popitem(last=False)
            self.num_chars -= evicted.num_chars
        self._entries[stored.id] = stored
        self.num_chars += stored.num_chars
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        stored = self._entries.get(response_id)
        if stored is not None:
            self._entries.move_to_end(response_id)
        return stored

    def delete(self, response_id: str) -> bool:
        stored = self._entries.pop(response_id, None)
        if stored is None:
            return False
        self.num_chars -= stored.num_chars
        return True
