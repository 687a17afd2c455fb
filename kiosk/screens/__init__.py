"""The patron touch UI (Kivy): the View the controller draws on, and the app.

Screens import Kivy; nothing else in the kiosk does. They talk to the rest only
through kiosk.core.interfaces.View (show/lights/cue) and the `post` callable that
takes kiosk.core.events.Press and kiosk.core.events.Barcode.
"""
