"""How an endpoint's pages follow one another, in the styles REST APIs use (dlt's paginators):
a next link in the body or in the `Link` header, a page number, an offset and limit, or a cursor
the body hands back. A paginator sees each page (its records and response) and says where the
next one is, or that there is none; a link or cursor given again (among the last `REMEMBERED`)
ends the read with an error instead of looping for ever, in bounded memory."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from runner.connectors.messaging.decode import MISSING, find
from runner.definitions.models import StrictModel
from runner.errors import TerminalError

if TYPE_CHECKING:
    import httpx

REMEMBERED = 1000  # the links or cursors a read remembers to find a loop


class NextLink(StrictModel):
    """The body holds the next page's URL (absolute, or relative to the API); none, null or
    '' ends the read."""

    style: Literal["next_link"] = Field(description="A next link in the body.")
    path: str = Field("next", min_length=1, description="Where the link is in the body: `links.next`.")


class LinkHeader(StrictModel):
    """The `Link` header's `rel="next"` URL (RFC 8288, GitHub's style); none ends the read."""

    style: Literal["link_header"] = Field(description="The Link header's next link.")


class PageNumber(StrictModel):
    """A page number parameter, counting up from `start`; a page with no records (or, with
    `size`, fewer than `size`) is the last."""

    style: Literal["page"] = Field(description="A page number.")
    param: str = Field("page", min_length=1, description="The page number's parameter.")
    start: int = Field(1, ge=0, description="The first page's number.")
    size_param: str | None = Field(
        None, min_length=1, description="A parameter asking for `size` records a page."
    )
    size: int | None = Field(None, ge=1, description="Records a page (sent in `size_param`, when set).")


class OffsetLimit(StrictModel):
    """An offset and a limit; a page with fewer than `limit` records is the last."""

    style: Literal["offset"] = Field(description="An offset and a limit.")
    offset_param: str = Field("offset", min_length=1, description="The offset's parameter.")
    limit_param: str = Field("limit", min_length=1, description="The limit's parameter.")
    limit: int = Field(100, ge=1, description="Records a page.")
    start: int = Field(0, ge=0, description="The first offset.")


class Cursor(StrictModel):
    """The body hands back a cursor, sent as a parameter for the next page; none, null or ''
    ends the read."""

    style: Literal["cursor"] = Field(description="A cursor from the body.")
    path: str = Field(min_length=1, description="Where the next cursor is in the body: `meta.next_cursor`.")
    param: str = Field("cursor", min_length=1, description="The parameter the cursor is sent in.")


Paginate = Annotated[NextLink | LinkHeader | PageNumber | OffsetLimit | Cursor, Field(discriminator="style")]


@dataclass
class Next:
    """Where the next page is: a link to follow as it is, or parameters over the first request's."""

    link: str | None = None
    params: dict[str, Any] | None = None


class Pages:
    """The pages of one read: `first()` gives the first request's extra parameters, `after()`
    the next request, or None after the last page."""

    def __init__(self, paginate: Any):
        self.style = paginate
        self.seen: set[str] = set()
        self.order: deque[str] = deque()
        self.number = getattr(paginate, "start", 0)

    def first(self) -> dict[str, Any]:
        p = self.style
        if isinstance(p, PageNumber):
            return {p.param: p.start, **({p.size_param: p.size} if p.size_param and p.size else {})}
        if isinstance(p, OffsetLimit):
            return {p.offset_param: p.start, p.limit_param: p.limit}
        return {}

    def after(self, body: Any, response: httpx.Response, records: int) -> Next | None:
        p = self.style
        if p is None:
            return None
        if isinstance(p, NextLink | Cursor):
            value = find(body, p.path.split("."))
            if value is MISSING or value in (None, ""):
                return None
            text = str(value)
            self._once(text, "link" if isinstance(p, NextLink) else "cursor")
            return Next(link=text) if isinstance(p, NextLink) else Next(params={p.param: text})
        if isinstance(p, LinkHeader):
            link = response.links.get("next", {}).get("url")
            if not link:
                return None
            self._once(link, "link")
            return Next(link=link)
        if isinstance(p, PageNumber):
            if records == 0 or (p.size is not None and records < p.size):
                return None
            self.number += 1
            return Next(
                params={p.param: self.number, **({p.size_param: p.size} if p.size_param and p.size else {})}
            )
        assert isinstance(p, OffsetLimit)
        if records < p.limit:
            return None
        self.number += records
        return Next(params={p.offset_param: self.number, p.limit_param: p.limit})

    def _once(self, value: str, what: str) -> None:
        if value in self.seen:
            shown = value if len(value) <= 200 else f"{value[:200]}…"  # the API's: any size
            raise TerminalError(f"read.paginate: the API gave the {what} {shown!r} twice; stopping a loop")
        self.seen.add(value)
        self.order.append(value)
        if len(self.order) > REMEMBERED:
            self.seen.discard(self.order.popleft())
