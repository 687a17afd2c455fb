#!/bin/sh
# USB keyboard gadget for a counter terminal (kiosk.mode = "counter", counter.keyboard = true).
#
# Makes the Raspberry Pi 4/5 appear to the staff PC, through its USB-C port, as a boot
# keyboard: the kiosk writes 8-byte reports to /dev/hidg0 and the PC receives the patron's
# library card number and Enter exactly as from a barcode scanner.
#
# Needs, in /boot/firmware/config.txt:   dtoverlay=dwc2,dr_mode=peripheral
# and in /etc/modules (or modules-load.d):   dwc2  libcomposite
# Run as root at boot by systemd/kiosk-hid-gadget.service (before kiosk.service).
#   hid-gadget.sh up     make the gadget and bind it to the UDC (idempotent)
#   hid-gadget.sh down   unbind and remove it
set -eu

NAME=${KIOSK_GADGET_NAME:-kiosk}
CONFIGFS=${KIOSK_CONFIGFS:-/sys/kernel/config}
G="$CONFIGFS/usb_gadget/$NAME"
OWNER=${KIOSK_HID_GROUP:-kiosk}

# The standard boot keyboard report descriptor (HID 1.11 appendix B.1): modifiers, a reserved
# byte, six key codes in; five LEDs out.
DESCRIPTOR='\005\001\011\006\241\001\005\007\031\340\051\347\025\000\045\001\165\001\225\010\201\002\225\001\165\010\201\003\225\005\165\001\005\010\031\001\051\005\221\002\225\001\165\003\221\003\225\006\165\010\025\000\045\145\005\007\031\000\051\145\201\000\300'

die() {
    echo "hid-gadget: $*" >&2
    exit 1
}

up() {
    [ -d "$CONFIGFS/usb_gadget" ] || modprobe libcomposite || die "no configfs usb_gadget (libcomposite)"
    if [ -d "$G" ]; then
        [ -n "$(cat "$G/UDC" 2>/dev/null)" ] && return 0
    else
        mkdir -p "$G"
        echo 0x1d6b > "$G/idVendor"         # Linux Foundation
        echo 0x0104 > "$G/idProduct"        # Multifunction Composite Gadget
        echo 0x0100 > "$G/bcdDevice"
        echo 0x0200 > "$G/bcdUSB"
        mkdir -p "$G/strings/0x409"
        echo "kiosk-$(hostname)" > "$G/strings/0x409/serialnumber"
        echo "Library kiosk" > "$G/strings/0x409/manufacturer"
        echo "Counter card reader keyboard" > "$G/strings/0x409/product"
        mkdir -p "$G/configs/c.1/strings/0x409"
        echo "keyboard" > "$G/configs/c.1/strings/0x409/configuration"
        echo 100 > "$G/configs/c.1/MaxPower"
        mkdir -p "$G/functions/hid.usb0"
        echo 1 > "$G/functions/hid.usb0/protocol"       # keyboard
        echo 1 > "$G/functions/hid.usb0/subclass"       # boot interface
        echo 8 > "$G/functions/hid.usb0/report_length"
        # shellcheck disable=SC2059  # the descriptor is octal escapes for printf on purpose
        printf "$DESCRIPTOR" > "$G/functions/hid.usb0/report_desc"
        ln -s "$G/functions/hid.usb0" "$G/configs/c.1/"
    fi
    udc=""
    for path in "${KIOSK_UDC_DIR:-/sys/class/udc}"/*; do
        [ -e "$path" ] && udc=${path##*/} && break
    done
    [ -n "$udc" ] || die "no USB device controller: add dtoverlay=dwc2,dr_mode=peripheral and reboot"
    echo "$udc" > "$G/UDC"
    # The kiosk user writes the reports; nobody else.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -c /dev/hidg0 ] && break
        sleep 0.2
    done
    [ -c /dev/hidg0 ] || die "/dev/hidg0 did not appear"
    chgrp "$OWNER" /dev/hidg0 && chmod 0620 /dev/hidg0
}

down() {
    [ -d "$G" ] || return 0
    echo "" > "$G/UDC" 2>/dev/null || true
    rm -f "$G/configs/c.1/hid.usb0"
    rmdir "$G/configs/c.1/strings/0x409" "$G/configs/c.1" "$G/functions/hid.usb0" "$G/strings/0x409" "$G"
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) die "usage: hid-gadget.sh up|down" ;;
esac
