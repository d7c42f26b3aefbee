"""Where things live: the collections (one per restriction), their workspaces, and every URL we emit.

Pure data shared by the renderers and the HTTP shell, so that a route and the link pointing to it
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from xmppbridge.iodef.markings import RESTRICTIONS

SERVICE_PATH = ".well-known/rolie/servicedocument"
CATEGORY_PATH = ".well-known/rolie/categorydocument"
FEEDS_PATH = "feeds/"
ENTRIES_PATH = "entries/"
SEARCH_PATH = "search"
SEARCH_DESCRIPTION_PATH = "search/description"
LOGIN_PATH = "login"

PUBLIC_WORKSPACE = "Public"
CONSORTIUM_WORKSPACE = "Consortium"


@dataclass(frozen=True)
class CollectionInfo:
    restriction: str  # canonical IODEF restriction = the key of the collection
    workspace: str

    @property
    def title(self) -> str:
        # draft-ietf-mile-rolie-02 §5.9.2: IODEF collections SHOULD be titled "Incidents"; the
        # restriction tells the consortium's collections apart.
        return f"Incidents ({self.restriction})"


# draft-ietf-mile-rolie-02 §5.9.1: public and consortium feeds live in separate workspaces.
COLLECTIONS: tuple[CollectionInfo, ...] = tuple(
    CollectionInfo(r, PUBLIC_WORKSPACE if r == "public" else CONSORTIUM_WORKSPACE) for r in RESTRICTIONS
)
WORKSPACES: tuple[str, ...] = (PUBLIC_WORKSPACE, CONSORTIUM_WORKSPACE)
COLLECTION_BY_RESTRICTION = {c.restriction: c for c in COLLECTIONS}


@dataclass(frozen=True)
class FeedUrls:
    """Absolute URLs under ``base_url`` (which gets a trailing slash if it lacks one)."""

    base_url: str

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")

    def _url(self, path: str, query: Iterable[tuple[str, object]] = ()) -> str:
        # Our paths are relative and plain, so joining is concatenation (urljoin costs more than
        # rendering an entry, and a feed page makes hundreds of URLs).
        pairs = [(key, str(value)) for key, value in query if value is not None]
        return self.base_url + path + ("?" + urlencode(pairs) if pairs else "")

    def service_document(self) -> str:
        return self._url(SERVICE_PATH)

    def category_document(self) -> str:
        return self._url(CATEGORY_PATH)

    def feed(self, restriction: str, *, before: int | None = None, after: int | None = None,
             count: int | None = None) -> str:
        """A page of a collection's current state: the newest one, or the one below/above a sequence
        number (``after=0``: the oldest page)."""
        return self._url(FEEDS_PATH + quote(restriction, safe=""),
                         [("before", before), ("after", after), ("count", count)])

    def archive(self, restriction: str, number: int) -> str:
        return self._url(f"{FEEDS_PATH}{quote(restriction, safe='')}/archive/{number}")

    def entry(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}")

    def iodef(self, entry_id: int) -> str:
        """The current document of an entry."""
        return self._url(f"{ENTRIES_PATH}{entry_id}/iodef.xml")

    def revision(self, entry_id: int, number: int) -> str:
        """One document version of an entry; what feeds link to, so that archived links stay true."""
        return self._url(f"{ENTRIES_PATH}{entry_id}/revisions/{number}/iodef.xml")

    def history(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}/history")

    def indicators_csv(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}/indicators.csv")

    def stix(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}/stix.json")

    def search_description(self) -> str:
        return self._url(SEARCH_DESCRIPTION_PATH)

    def search(self, query: Iterable[tuple[str, object]] = ()) -> str:
        return self._url(SEARCH_PATH, query)

    def login(self) -> str:
        return self._url(LOGIN_PATH)

    def taxii_api_root(self) -> str:
        return self._url("taxii2/api/")
