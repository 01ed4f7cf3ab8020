"""What every driver builds on, so that drivers are peers (nova's ``virt/driver.py`` beside
``fake.py`` and ``libvirt/``): the host's configuration, its persisted domains and migration jobs,
domain records, cookies, the checks libvirt makes before it accepts a domain, the per-migration job
that makes each phase idempotent, and the search for a free migration port.

A driver package (``sim``, ``qemu``) builds on this and on ``workers.drivers.base`` only; no driver
imports another driver.
"""
