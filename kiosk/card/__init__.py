"""The card: ISO 7816 exchanges, the APDU allowlist, the JPKI and 券面事項入力補助AP protocols,
certificate-chain checks, the card service, and the readers (PC/SC, virtual, vpcd bridge).

The shipped J-LIS user-authentication CA certificates live in `trust/jpki/`."""
