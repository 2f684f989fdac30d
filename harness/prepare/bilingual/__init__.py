"""Korean-English retrieval tasks from real Debian packages: the Debian FAQ (`debian-faq`,
`debian-faq-ko`) aligned by section, and the Firefox ESR and Thunderbird interface strings
(`firefox-esr`, `thunderbird` and their `-l10n-ko` language packs) aligned by message id.
See `harness.prepare.bilingual.build`."""

from harness.prepare.bilingual.build import APPS, PACKAGES, build_bilingual, register, split_units

__all__ = ["APPS", "PACKAGES", "build_bilingual", "register", "split_units"]
