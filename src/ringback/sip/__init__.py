"""Sans-I/O SIP (RFC 3261), one concern per module; each imports only modules listed above it.

``headers``      header names, compact forms, the :class:`~.headers.Headers` container
``errors``       :class:`~.errors.SipParseError`
``grammar``      token, hostport and ``;name=value`` parameter lists
``uri``          sip:/sips:/tel: URIs and name-addr (From, To, Contact)
``via``          the Via header field
``model``        :class:`~.model.Request` and :class:`~.model.Response`, serialization
``responses``    building responses: reason phrases, tags, copied header fields
``message``      reading messages off the wire: ``parse_message``, stream framing, limits
``fast``         hand-written readers for the hot path, checked against the parsers above
``sdp``          SDP offers and answers
``transaction``  server transactions
"""
