"""Operations: the status records, their collection, and the status page, ``/status.json`` and
``/metrics`` rendered from them."""
