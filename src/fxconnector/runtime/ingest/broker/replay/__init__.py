"""The replay broker: plays recorded tick files (Dukascopy `.bi5` trees, CSV) as a live feed."""
