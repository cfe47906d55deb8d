"""The digits FedAvg task of fedengine's shipped workflow, as a Flower app."""
