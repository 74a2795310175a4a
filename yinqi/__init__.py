"""Yinqi: bank-enterprise direct-connect (银企直联) payments."""
