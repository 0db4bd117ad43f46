"""What tests share: helpers, datasets and clients. Test modules import from here, never
from one another."""
