"""Who may do what, as data: node names and restrictions (``nodes``), rights (``rights``), the member
registry and its audiences (``members``, ``audiences``), the sources we accept items from
(``sources``), and the one decision every shell asks (``may``)."""
