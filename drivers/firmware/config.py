# Hearth sensor node: this node's settings. Edit, then copy to the node (see README.md).
# Anything left out takes the default shown here.

# Encryption key shared with the hub: 32 hex characters, a different one for every node.
# Make one with: python3 -c "import secrets; print(secrets.token_hex(16))"
# Leave empty ("") to broadcast unencrypted (only for testing on the bench).
BINDKEY = ""

# Name in scan responses (seen by `hearth sensors scan`); the address's last 4 hex are added.
NAME = "hearth-node"

# Temperature and humidity sensor on I2C: "sht31", "bme280" or None.
SENSOR = "sht31"
I2C_ID = 0  # Pico W: 0 (GP4/GP5) or 1; ESP32: 0 or 1
I2C_SDA = 4  # GPIO number
I2C_SCL = 5  # GPIO number
I2C_ADDRESS = None  # None: the sensor's usual address (SHT31 0x44, BME280 0x76)

# PIR motion sensor output, or None for no PIR.
PIR_PIN = None  # GPIO number, e.g. 15
PIR_ACTIVE_HIGH = True  # most PIR modules (HC-SR501, AM312) drive the pin high on motion
PIR_PULL = "down"  # "down", "up" or None

# Battery voltage through a resistor divider into an ADC pin, or None to send no battery.
BATTERY_ADC_PIN = None  # Pico W: 26, 27 or 28; ESP32: 32-39
BATTERY_DIVIDER = 2.0  # battery volts / pin volts (two equal resistors: 2.0)
BATTERY_EMPTY_V = 3.0  # reported as 0 %   (3 x AA alkaline: 3.0 V)
BATTERY_FULL_V = 4.5  # reported as 100 % (3 x AA alkaline: 4.5 V)

# Timing.
INTERVAL_S = 60  # a reading at least this often
BURST_MS = 1000  # how long each reading is advertised
ADVERT_INTERVAL_MS = 100  # gap between adverts in a burst
MIN_GAP_S = 2  # motion changes are sent at most this often
MOTION_POLL_MS = 500  # light sleep: how often the PIR is looked at
SLEEP_MODE = "light"  # "light" (Pico W, ESP32) or "deep" (ESP32 only; PIR on an RTC pin)
STARTUP_WAIT_S = 5  # after reset: time to interrupt with Ctrl-C before the node sleeps
