"""Pure text and rules: what a request is, how text is cleaned and split, who may ask.

No I/O and no Discord: everything here is a function of its arguments, so it is tested
without a loop, a server or a mock.
"""
