"""BLE sensors: adverts heard by bleak, decoded by the Bluetooth-Devices libraries.

`pipeline` is the detection callback's hot path (paired lookup, duplicate drop, decode,
reporting policy), `decoders` wraps bthome-ble, xiaomi-ble, govee-ble and ruuvitag-ble and
maps their output onto our Quantity vocabulary, `policy` decides which values are stored.
Nothing is imported here, so `import drivers.ble` pulls in no radio or decoder library.
"""
