"""Staff screens, one module per screen; the hidden corner that opens them is
kiosk/screens/staff_corner.py.

- base: StaffScreen and what the staff screens share (title row, back button, button grid,
  PIN pad, spinner)
- card_steps: CardStepScreen, the frame of the counter's card screens (registration,
  identification): a stage whose widgets follow the model's step
- pin_step: StaffPinStep, those screens' card PIN step (pad beside or under the words)
- signin: StaffSigninScreen
- menu: StaffMenuScreen
- status: StaffStatusScreen
- review: StaffReviewScreen and its ConflictRow
- selftest: StaffSelftestScreen
- confirm: StaffConfirmScreen (restart, shutdown)
- register: StaffRegisterScreen (counter registration)

A counter terminal's own screens (the counter screen, identification) are kiosk/screens/counter/.
"""
