"""Fault injection: what a hostile client, a broken upstream or an outage does to the gateway (issue 11).

Each module takes one kind of fault and drives it through the real proxy, PostgreSQL and broker; each
test is a regression test for something that was reproduced against an earlier build (its docstring
says what broke). ``test_chaos.py`` combines them under load.
"""
