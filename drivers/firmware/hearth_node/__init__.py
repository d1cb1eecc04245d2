"""Hearth sensor-node firmware (MicroPython): modules copied to the node as one package.

The encoder modules (bthome, aes_ccm, counter, settings) import nothing from `machine` or
`bluetooth`, so the hub's tests run them on CPython; main.py wires them to the hardware.
"""
