"""Chat with people: plain-text commands, incident summaries, subscriptions, room posts (the pure core).

Nothing here touches a socket; ``xmppbridge.xmpp.chat``, ``rooms`` and ``adhoc`` are the XMPP shells.
"""
