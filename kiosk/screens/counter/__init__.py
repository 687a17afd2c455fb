"""Counter terminal screens (kiosk.mode = "counter"), one module per screen.

- home: StaffCounterScreen, the staff's counter screen (identify, register, staff menu, sign out)
- identify: CounterIdentifyScreen (the patron's card and PIN, then the hand-over)
- barcode: BarcodeSymbol, the on-screen barcode drawn at a physical module width
"""
