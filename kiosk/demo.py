"""Demo data for a developer's kiosk: a planogram of twelve slots and two members.

Seeded only into an empty database, so it never touches a kiosk that has real data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import select

from kiosk.db import Database
from kiosk.models import AccountEntry, AuditLog, Member, Product, Slot, utcnow

if TYPE_CHECKING:
    from simulators.fingerprint import FingerprintSimulator

#: (slot, product, description, price in cents, stock, capacity)
PLANOGRAM: tuple[tuple[str, str, str, int, int, int], ...] = (
    ("A1", "Still Water 500 ml", "Spring water", 120, 8, 10),
    ("A2", "Sparkling Water 500 ml", "Mineral water with bubbles", 130, 8, 10),
    ("A3", "Orange Juice 330 ml", "Not from concentrate", 220, 6, 8),
    ("A4", "Cola 330 ml", "Classic cola", 180, 8, 10),
    ("B1", "Salted Crisps", "Sea-salt potato crisps, 40 g", 150, 6, 8),
    ("B2", "Pretzel Sticks", "Baked, 75 g", 140, 6, 8),
    ("B3", "Trail Mix", "Nuts and raisins, 50 g", 250, 5, 8),
    ("B4", "Rice Cakes", "Lightly salted, 4 pieces", 160, 6, 8),
    ("C1", "Dark Chocolate Bar", "70 % cocoa, 50 g", 190, 6, 8),
    ("C2", "Granola Bar", "Oats and honey", 160, 6, 8),
    ("C3", "Peanut Butter Cups", "Two cups, 42 g", 210, 1, 8),
    ("C4", "USB-C Cable 1 m", "Charging cable", 899, 3, 5),
)

#: (name, fingerprint library page, simulated finger name, opening balance in cents)
MEMBERS: tuple[tuple[str, int, str, int], ...] = (
    ("Alice Demo", 1, "alice", 2000),
    ("Bob Demo", 2, "bob", 150),
)


def is_empty(db: Database) -> bool:
    with db.session() as session:
        return session.exec(select(Product)).first() is None and (
            session.exec(select(Slot)).first() is None
        )


def seed(db: Database) -> bool:
    """Fill an empty database with the demo planogram and members; False if it was not empty."""
    if not is_empty(db):
        return False
    with db.session() as session:
        for code, name, description, price, stock, capacity in PLANOGRAM:
            product = Product(name=name, description=description)
            session.add(product)
            session.flush()
            session.add(Slot(code=code, product_id=product.id, price_cents=price,
                             stock=stock, capacity=capacity))
        for name, page, _finger, balance in MEMBERS:
            member = Member(name=name, fingerprint_page=page, consent_at=utcnow())
            session.add(member)
            session.flush()
            assert member.id is not None
            session.add(AccountEntry(member_id=member.id, amount_cents=balance,
                                     reason="demo opening balance"))
        session.add(AuditLog(actor="kiosk", action="seed_demo_data",
                             after={"slots": len(PLANOGRAM), "members": len(MEMBERS)}))
        session.commit()
    return True


def enrol_demo_fingers(db: Database, simulator: FingerprintSimulator) -> list[str]:
    """Put the demo members' simulated fingers into a simulated module's empty pages.

    A real kiosk enrols members at the maintenance page; the demo members were "enrolled"
    when the demo data was seeded, so their fingers must be on the (simulated) module too.
    Returns the fingers enrolled now; pages that hold anything are left alone.
    """
    enrolled = []
    with db.session() as session:
        pages = {m.fingerprint_page for m in session.exec(select(Member)).all()}
    library = simulator.library
    for _name, page, finger, _balance in MEMBERS:
        if page in pages and page not in library:
            simulator.enrol(finger, page)
            enrolled.append(finger)
    return enrolled
