"""Sign-in sessions, pending sign-ins, named API tokens and the audit log of console and API changes."""
